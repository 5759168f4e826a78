"""Shared fixtures for the sk-processing tests (Skprocess and Pool).

The sk_testkit plugin (auto-loaded) provides ``start_method``, the leak check
and the database servers; classes used in children live in
``skprocess_support.py`` so that spawn/forkserver children can import them.
"""
