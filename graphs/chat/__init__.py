"""Chat with memory: a one-node graph whose conversation lives in a checkpointer."""
