"""Who hears about a run besides the terminal: the `--log-json` file, webhooks, a command."""
