"""The archive's lifecycle commands, one module each: ``expire`` (retention ends), ``erase`` (a
lawful request), ``restore`` (cold storage). Each is a one-shot command that reads as its steps;
none runs inside the daemon."""
