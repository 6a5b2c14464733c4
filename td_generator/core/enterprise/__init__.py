"""Alias package for the seed guide's import path; all code lives in tdauto."""
