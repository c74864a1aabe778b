"""The hardware spec database (published figures per product) and the host it runs on."""
