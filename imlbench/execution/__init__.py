"""Where runs execute: supervised worker processes, dask, Slurm. Reading results never imports this."""
