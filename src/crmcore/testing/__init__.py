"""Test kit for crmcore and its plugins: hypothesis strategies for the model and the
storage contract suite every adapter must pass (needs the `testing` extra).
"""
