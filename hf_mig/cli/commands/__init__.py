"""Subcommands of ``hf-mig`` contributed by modules: each defines ``register(subparsers)``."""
