"""crmcore's built-in adapters; each module registers itself through the `crmcore` entry points."""
