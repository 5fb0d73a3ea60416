"""Stand-ins for the outside services the service talks to, run locally by the tests."""
