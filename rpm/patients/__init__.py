"""Patients: who is enrolled, in which time zone, and their status."""
