"""Pure domain code: CDR parsing, call ids, keys, audio checks, windows, outcomes and documents. No I/O."""
