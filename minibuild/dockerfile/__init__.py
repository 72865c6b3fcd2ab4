"""The frontend, pure: Buildfile text to typed instructions, shell words, plans and cache keys."""
