"""One module per subcommand; each is a thin shell over meca_cli.core and meca_cli.store."""
