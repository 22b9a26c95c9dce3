"""Jinja2 templates of the dashboard (a package so setuptools ships the *.html)."""
