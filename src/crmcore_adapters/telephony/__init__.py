"""Telephony adapters: a SIP phone driven through baresip, and hosted-provider webhooks."""
