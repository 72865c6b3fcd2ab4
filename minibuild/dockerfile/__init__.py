"""The frontend, pure: Buildfile text to typed instructions, shell words, plans and cache keys.

    parser        the entry point: parse(text) -> Buildfile
      prepass     directives, continuation lines, comments, heredoc bodies -> logical lines
      syntax      a logical line -> a lark tree (grammar/buildfile.lark); lark's errors, located
      heredoc     the tree's `<<EOF` markers -> their bodies
      transformer the tree -> an instruction, arity checked
    instructions  the typed instructions (frozen values with their location)
    shell         word expansion ($VAR, quotes, escapes) as the build scope gives it
      patterns    the globs of ${v#p} ${v%p} ${v/p/r}
    suggest       "did you mean ...?" for mistyped flags and stage names
    runmount      RUN --mount specs -> typed mounts; secretsource: build --secret options
    buildargs     the args Docker defines itself (platform, proxies, SOURCE_DATE_EPOCH...)
    plan          stages, global ARGs, the stages a target needs
    metadata      what ENV, LABEL, CMD... do to an image config; what a stage's scope holds
    runcommand    what a RUN executes (heredocs, /dev/pipes scripts) and its history text
    dockerignore  .dockerignore patterns (and <Buildfile>.dockerignore)

Only syntax, heredoc and transformer use lark, and only when text is really parsed.
"""
