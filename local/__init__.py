"""The local stack: the deployed code, run on 127.0.0.1 with one command."""
