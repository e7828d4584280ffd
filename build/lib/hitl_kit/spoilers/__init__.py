"""Spoilers: the kit's own answers to drills. Open a module here only after its drill.

The demo world needs these answers to run (its tools carry their classes), so they live in the
package; they live *here* so that reading the modules the notebooks point you to never gives a
drill away.
"""
