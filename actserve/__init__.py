"""actserve: video action recognition as an HTTP microservice (command-line entry point)."""

__version__ = "0.1.0"
