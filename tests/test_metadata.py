import dataclasses
import io
import json

import numpy as np
import pytest
from tensorboard.compat.proto import summary_pb2

from tb_activations import metadata

INFO = metadata.LayerInfo(
    layer="vgg16/block1_conv1",
    class_name="Conv2D",
    layout="image",
    output_shape=(None, 224, 224, 64),
    channels=64,
    total_channels=64,
    probes=2,
    height=224,
    width=224,
    source_height=224,
    source_width=224,
)


def test_summary_metadata_is_a_blob_sequence_of_this_plugin():
    md = metadata.create_summary_metadata(INFO)
    assert md.plugin_data.plugin_name == "activations"
    assert md.data_class == summary_pb2.DATA_CLASS_BLOB_SEQUENCE
    assert metadata.parse_plugin_metadata(md.plugin_data.content) == INFO


@pytest.mark.parametrize(
    "channels, per_image, images, last_image_channels",
    [
        (64, 1, 64, range(63, 64)),  # format version 1's layout
        (64, 16, 4, range(48, 64)),
        (50, 16, 4, range(48, 50)),  # the last PNG holds fewer
        (5, 8, 1, range(0, 5)),
    ],
)
def test_blob_positions(channels, per_image, images, last_image_channels):
    info = dataclasses.replace(INFO, channels=channels, channels_per_image=per_image)
    assert info.images_per_probe == images
    assert info.blob_count == metadata.FIRST_IMAGE_INDEX + 2 * images
    assert info.image_index(0, 0) == metadata.FIRST_IMAGE_INDEX
    assert info.image_index(1, 1) == metadata.FIRST_IMAGE_INDEX + images + 1
    assert info.channels_in(images - 1) == last_image_channels
    held = [c for i in range(images) for c in info.channels_in(i)]
    assert held == list(range(channels))
    for c in range(channels):
        index, held = info.holding(1, c)
        assert c in held and held == info.channels_in(index - info.image_index(1, 0))


@pytest.mark.parametrize(
    "fields",
    [
        {"layer": "shared@2", "call": 2},
        {"layer": "lstm:1", "output": "1"},
        {"layer": "block@2:key", "call": 2, "output": "key"},
        {
            "layer": "__probe__/token_ids",
            "layout": "probe",
            "input_name": "token_ids",
            "probe_kind": "tokens",
            "tokens": (("the", "cat"), ("a", "dog")),
        },
        {"layer": "__probe__", "layout": "probe", "probe_kind": "tokens", "tokens": ((7, 0),)},
    ],
    ids=["call", "output", "both", "token strings", "token ids"],
)
def test_version_3_fields_survive_the_round_trip(fields):
    info = dataclasses.replace(INFO, **fields)
    md = metadata.create_summary_metadata(info)
    assert metadata.parse_plugin_metadata(md.plugin_data.content) == info


def test_a_version_2_layer_reads_with_the_version_3_defaults():
    d = INFO.to_json() | {"version": 2}
    for key in ("call", "output", "input_name", "probe_kind", "tokens"):
        del d[key]
    info = metadata.parse_plugin_metadata(json.dumps(d).encode())
    assert (info.version, info.call, info.output, info.probe_kind, info.tokens) == (
        2,
        1,
        None,
        None,
        None,
    )


def test_a_version_1_layer_has_one_channel_per_image():
    d = INFO.to_json() | {"version": 1}
    del d["channels_per_image"]
    info = metadata.parse_plugin_metadata(json.dumps(d).encode())
    assert (info.version, info.channels_per_image, info.blob_count) == (1, 1, 2 + 2 * 64)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "no version"),
        (json.dumps({"version": metadata.FORMAT_VERSION + 1}).encode(), "newer"),
        (json.dumps({"version": 1, "layer": "x"}).encode(), "incomplete"),
        *[
            (
                json.dumps({"version": 2, "channels_per_image": k}).encode(),
                f"channels_per_image={k!r}",
            )
            for k in (0, "4", True, 1.5)
        ],
        *[
            (
                json.dumps({"version": 3, field: value}).encode(),
                rf"{field} must be a list of names. Received: {field}=",
            )
            for field in ("set_fields", "unit_fields")
            for value in ("mean", [1], None)
        ],
    ],
)
def test_bad_content_is_refused_with_a_reason(content, message):
    with pytest.raises(ValueError, match=message):
        metadata.parse_plugin_metadata(content)


@pytest.mark.parametrize(("version", "set_blobs"), [(1, 0), (2, 0), (3, 2)])
def test_the_probe_set_blobs_follow_the_pngs_from_version_3(version, set_blobs):
    d = INFO.to_json() | {"version": version}
    if version < 3:
        for key in ("samples", "units", "set_fields", "unit_fields", "activation"):
            del d[key]
    else:
        d |= {"samples": 256, "units": 64, "set_fields": list(metadata.SET_FIELDS)}
        d |= {"unit_fields": list(metadata.UNIT_FIELDS), "activation": "tanh"}
    info = metadata.parse_plugin_metadata(json.dumps(d).encode())
    assert info.set_index == metadata.FIRST_IMAGE_INDEX + info.probes * info.images_per_probe
    assert info.blob_count == info.set_index + set_blobs
    assert info.set_size == (256 if version == 3 else info.probes)
    assert metadata.parse_plugin_metadata(json.dumps(info.to_json()).encode()) == info


def test_the_set_header_keys_are_written_null_where_not_finite():
    header = metadata.decode_header(
        metadata.encode_header(0.0, nonfinite=True, rms=float("nan"), effective_rank=2.5)
    )
    assert (header["nonfinite"], header["rms"], header["effective_rank"]) == (True, None, 2.5)
    with pytest.raises(TypeError, match=r"Received: \['bogus'\]"):
        metadata.encode_header(0.0, bogus=1.0)


def test_unknown_fields_from_a_newer_writer_are_ignored():
    d = INFO.to_json() | {"something_new": 1}
    assert metadata.parse_plugin_metadata(json.dumps(d).encode()) == INFO


def test_stats_and_header_round_trip():
    stats = np.arange(2 * 3 * 6, dtype=np.float32).reshape(2, 3, 6)
    stats[0, 0, 0] = np.nan
    back = metadata.decode_stats(metadata.encode_stats(stats))
    np.testing.assert_array_equal(back, stats)
    assert metadata.decode_header(metadata.encode_header(2.5, 7, 3)) == {
        "epoch": 2.5,
        "batch": 7,
        "index": 3,
        "prev_step": None,
        "start_step": None,
        "cka_prev": None,
        "cka_start": None,
    }


@pytest.mark.parametrize("cka", [float("nan"), float("inf"), None])
def test_a_cka_that_is_not_a_number_is_written_as_null(cka):
    header = metadata.encode_header(
        1.0, None, 2, prev_step=4, start_step=0, cka_prev=cka, cka_start=0.5
    )
    assert metadata.decode_header(header) == {
        "epoch": 1.0,
        "batch": None,
        "index": 2,
        "prev_step": 4,
        "start_step": 0,
        "cka_prev": None,
        "cka_start": 0.5,
    }


def test_statistics_of_older_logs_and_with_measures_decode():
    for fields in (metadata.STATS_FIELDS, metadata.LAYER_STATS_FIELDS):
        stats = np.ones((2, 3, len(fields)), np.float32)
        assert metadata.decode_stats(metadata.encode_stats(stats)).shape == (2, 3, len(fields))
    with pytest.raises(ValueError, match="expected"):
        metadata.decode_stats(metadata.encode_stats(np.ones((2, 3, 5))))


@pytest.mark.parametrize(
    "array",
    [
        np.arange(24, dtype=np.float32).reshape(2, 3, 4),
        np.arange(6.0).reshape(3, 2).T,  # Fortran order: read by numpy every time
        np.zeros((0, 3), np.float32),
        np.arange(5, dtype=np.int16),
        np.float64(2.5),
    ],
    ids=["float32-3d", "fortran", "empty", "int16", "scalar"],
)
def test_load_npy_reads_what_np_load_reads(array):
    buf = io.BytesIO()
    np.save(buf, array)
    blob = buf.getvalue()
    # The second read of a header goes through the parsed-header cache.
    for _ in range(2):
        got = metadata.load_npy(blob)
        assert (got.dtype, got.shape) == (array.dtype, array.shape)
        np.testing.assert_array_equal(got, array)
        assert got.flags.writeable


def test_load_npy_refuses_a_cut_blob():
    buf = io.BytesIO()
    np.save(buf, np.ones((4, 4), np.float32))
    blob = buf.getvalue()
    metadata.load_npy(blob)
    with pytest.raises(ValueError):
        metadata.load_npy(blob[:-4])
