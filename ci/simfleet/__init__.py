"""Simulated GPU fleets on one machine for rocm.madengine's tests, benchmarks and catalogue authors."""
