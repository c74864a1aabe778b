"""Fusion passes: fold, fuse and recognize patterns into single ops."""
