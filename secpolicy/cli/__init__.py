"""Command-line interface: click commands only. Parses options, calls the library, prints, exits."""
