"""Reading a layer's index series: every kept step's measures in one call.

The writer puts, beside each layer step's blobs, the blobs that are not
pictures again as one string tensor (`metadata.INDEX_PLUGIN_NAME`). A
`read_tensors` of that series gives the header, statistics and probe-set
values of every kept step at once, where the blobs take a `read_blob` each:
one gRPC call each on the Rust data server, four per layer and step.
"""

from __future__ import annotations

from tensorboard import errors
from tensorboard.data import provider

from tb_activations import metadata
from tb_activations.series import READ_ALL, Series


def at(datum) -> tuple:
    """Where a kept step's index value is found: its step and wall time."""
    return (datum.step, datum.wall_time)


def read(data_provider, ctx, series: Series) -> dict[tuple, dict[int, bytes]] | str:
    """{`at(datum)`: {blob index: bytes}} of the steps the series' index
    holds; {} when it has none (a log from before the index), or a string
    saying why an index that is there cannot be used."""
    tag = metadata.INDEX_TAG_PREFIX + series.tag
    rtf = provider.RunTagFilter(runs=[series.run], tags=[tag])
    kw = {"experiment_id": series.experiment, "plugin_name": metadata.INDEX_PLUGIN_NAME}
    try:
        listed = data_provider.list_tensors(ctx, run_tag_filter=rtf, **kw)
        ts = listed.get(series.run, {}).get(tag)
        if ts is None:
            return {}
        data = data_provider.read_tensors(ctx, downsample=READ_ALL, run_tag_filter=rtf, **kw)
    except errors.NotFoundError:
        # The run vanished meanwhile: its blobs say so when read.
        return {}
    try:
        of, blobs = metadata.parse_index_metadata(ts.plugin_content)
    except ValueError as e:
        return str(e)
    if of != series.tag or blobs != metadata.index_blobs(series.info):
        return f"it copies blobs {list(blobs)} of {of!r}"
    out: dict[tuple, dict[int, bytes]] = {}
    for datum in data.get(series.run, {}).get(tag, []):
        values = datum.numpy
        if values.dtype == object and values.shape == (len(blobs),):
            # Duplicates of a step (a retried write) hold the same bytes.
            out.setdefault(at(datum), dict(zip(blobs, values.tolist())))
    return out
