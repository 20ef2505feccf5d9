// Preloaded by `bun test` (bunfig.toml): quiet logs unless a developer asks for them.
process.env.LOG_LEVEL ??= "silent";
