"""Fiber (rayonlabs/fiber): signed requests and MLTS, the transport several subnets use between validators
and miners. See wire.py for the wire format and where each rule comes from."""
