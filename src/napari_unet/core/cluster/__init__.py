"""Prediction on a Dask cluster: one task per file, big images cut into blocks written into
chunked OME-Zarr (needs the ``distributed`` extra; imported only by ``predict --cluster``)."""
