"""The bottom layer: protocol types, the error type, names -> classes (the registry), named seed
streams. Nothing here imports any other part of imlbench."""
