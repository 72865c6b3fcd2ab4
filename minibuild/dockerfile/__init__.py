"""The frontend, pure: Buildfile text to typed instructions, shell words, plans and cache keys.

    parser        the entry point: parse(text) -> Buildfile
      prepass     directives, continuation lines, comments, heredoc bodies -> logical lines
      syntax      a logical line -> a lark tree (grammar/buildfile.lark); lark's errors, located
      heredoc     the tree's `<<EOF` markers -> their bodies
      transformer the tree -> an instruction, arity checked
    instructions  the typed instructions (frozen values with their location)
    shell         word expansion ($VAR, quotes, escapes) as the build scope gives it
    runmount      RUN --mount specs -> typed mounts; secretsource: build --secret options
    plan          stages, global ARGs, the stages a target needs
    metadata      what ENV, LABEL, CMD... do to an image config
    dockerignore  .dockerignore patterns

Only syntax, heredoc and transformer use lark, and only when text is really parsed.
"""
