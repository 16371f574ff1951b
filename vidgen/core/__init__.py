"""The bottom layer: errors and exit codes, size limits, signals, the terminal, library start-up.

Imports nothing else of vidgen."""
