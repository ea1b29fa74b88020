"""Feature extraction and its on-disk cache, with a cheap counting encoder instead of a backbone."""
from __future__ import annotations

import hashlib
import shutil
import threading

import numpy as np
import pytest
from PIL import Image

from tests.conftest import CLASS_COLOURS, make_image_folder, write_image
from tlcore.training import features
from tlcore.training.features import FeatureCache, extract_features

SIZE = 16  # the encoder sees images resized to SIZE x SIZE


class CountingEncoder:
    """``get_encoder`` stand-in: counts builds and calls; the features are each image's mean colour."""

    def __init__(self):
        self.builds = 0
        self.images_seen = 0
        self.batch_shapes = []

    def __call__(self):
        self.builds += 1

        def encode(batch):
            assert batch.dtype == np.uint8
            self.batch_shapes.append(batch.shape)
            self.images_seen += len(batch)
            return batch.reshape(len(batch), -1, 3).mean(axis=1)

        return encode


def mean_colour(path, size=SIZE):
    """The expected feature, computed independently of tlcore's decoding path."""
    with Image.open(path) as img:
        arr = np.asarray(img.convert("RGB").resize((size, size), Image.BILINEAR), dtype=np.float64)
    return arr.reshape(-1, 3).mean(axis=0)


@pytest.fixture
def paths(image_folder):
    return sorted(str(p) for p in image_folder.rglob("*.png"))


@pytest.fixture
def cache(tmp_path):
    return FeatureCache(tmp_path / "features")


def npy_files(cache):
    return sorted(cache.root.rglob("*.npy"))


# FeatureCache ---------------------------------------------------------------------------

def test_cache_put_get_round_trip(cache):
    vec = np.random.default_rng(0).normal(size=7)
    assert cache.get("bb|imagenet", "ab" * 32) is None
    cache.put("bb|imagenet", "ab" * 32, vec)
    got = cache.get("bb|imagenet", "ab" * 32)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, vec.astype(np.float32))
    # Keyed by both backbone and content.
    assert cache.get("other|imagenet", "ab" * 32) is None
    assert cache.get("bb|imagenet", "cd" * 32) is None
    # Write-then-rename leaves no temporary file behind.
    assert not list(cache.root.rglob("*.tmp"))


def test_cache_overwrite_replaces_vector(cache):
    cache.put("k", "ef" * 32, np.zeros(3))
    cache.put("k", "ef" * 32, np.ones(3))
    np.testing.assert_array_equal(cache.get("k", "ef" * 32), np.ones(3, np.float32))


def test_cache_damaged_file_is_a_miss(cache):
    cache.put("k", "12" * 32, np.ones(4))
    (path,) = npy_files(cache)
    path.write_bytes(b"not a numpy file")
    assert cache.get("k", "12" * 32) is None


def test_cache_default_root_follows_tlcore_cache_dir(isolated_cache):
    assert FeatureCache().root == isolated_cache / "features"


# extract_features -----------------------------------------------------------------------

def test_features_are_the_encoder_output_in_input_order(paths, cache):
    enc = CountingEncoder()
    res = extract_features(paths, "bb|imagenet", enc, SIZE, cache)
    assert res.kept == list(range(len(paths)))
    assert res.skipped == []
    assert res.features.shape == (len(paths), 3)
    assert res.features.dtype == np.float32
    expected = np.stack([mean_colour(p) for p in paths])
    np.testing.assert_allclose(res.features, expected, atol=1e-3)
    # Red images have more red than blue, and the other way round: rows are not shuffled.
    for p, row in zip(paths, res.features):
        if "/red/" in p:
            assert row[0] > row[2]
        else:
            assert row[2] > row[0]


def test_second_run_is_served_from_cache(paths, cache):
    first = CountingEncoder()
    r1 = extract_features(paths, "bb|imagenet", first, SIZE, cache)
    assert (first.builds, first.images_seen) == (1, len(paths))
    assert (r1.cache_hits, r1.computed) == (0, len(paths))
    assert len(npy_files(cache)) == len(paths)

    second = CountingEncoder()
    r2 = extract_features(paths, "bb|imagenet", second, SIZE, cache)
    assert second.builds == 0 and second.images_seen == 0
    assert (r2.cache_hits, r2.computed) == (len(paths), 0)
    assert r2.kept == r1.kept
    np.testing.assert_array_equal(r2.features, r1.features)


def test_partial_cache_computes_only_new_images(paths, cache):
    extract_features(paths[:5], "bb|imagenet", CountingEncoder(), SIZE, cache)
    enc = CountingEncoder()
    res = extract_features(paths, "bb|imagenet", enc, SIZE, cache)
    assert (res.cache_hits, res.computed) == (5, len(paths) - 5)
    assert enc.images_seen == len(paths) - 5
    np.testing.assert_allclose(res.features, np.stack([mean_colour(p) for p in paths]), atol=1e-3)


def test_other_backbone_key_misses(paths, cache):
    extract_features(paths, "bb|imagenet", CountingEncoder(), SIZE, cache)
    enc = CountingEncoder()
    res = extract_features(paths, "bb|file:abc", enc, SIZE, cache)
    assert enc.builds == 1 and enc.images_seen == len(paths)
    assert (res.cache_hits, res.computed) == (0, len(paths))
    assert len(npy_files(cache)) == 2 * len(paths)


def test_no_backbone_key_disables_cache(paths, cache):
    for _ in range(2):
        enc = CountingEncoder()
        res = extract_features(paths, None, enc, SIZE, cache)
        assert enc.images_seen == len(paths)
        assert (res.cache_hits, res.computed) == (0, len(paths))
    assert npy_files(cache) == []


def test_without_cache_object_everything_is_computed(paths):
    enc = CountingEncoder()
    res = extract_features(paths, "bb|imagenet", enc, SIZE, cache=None)
    assert (res.cache_hits, res.computed) == (0, len(paths))
    assert enc.images_seen == len(paths)


def test_same_content_under_two_paths_is_one_cache_entry(tmp_path, cache):
    a = write_image(tmp_path / "a.png", CLASS_COLOURS["green"])
    b = tmp_path / "copy" / "b.png"
    b.parent.mkdir()
    shutil.copyfile(a, b)
    res = extract_features([str(a), str(b)], "bb|imagenet", CountingEncoder(), SIZE, cache)
    assert res.kept == [0, 1]
    np.testing.assert_array_equal(res.features[0], res.features[1])
    assert len(npy_files(cache)) == 1

    c = tmp_path / "c.png"
    shutil.copyfile(a, c)
    enc = CountingEncoder()
    res = extract_features([str(c)], "bb|imagenet", enc, SIZE, cache)
    assert (res.cache_hits, res.computed) == (1, 0)
    assert enc.builds == 0


def test_batches_respect_batch_size(paths, cache):
    enc = CountingEncoder()
    extract_features(paths, "bb|imagenet", enc, SIZE, cache, batch_size=5)
    sizes = [shape[0] for shape in enc.batch_shapes]
    assert sum(sizes) == len(paths)
    assert max(sizes) <= 5
    assert all(shape[1:] == (SIZE, SIZE, 3) for shape in enc.batch_shapes)


def test_progress_is_monotonic_and_reaches_total(paths, cache):
    events = []
    extract_features(paths, "bb|imagenet", CountingEncoder(), SIZE, cache, batch_size=3,
                     on_progress=lambda done, total: events.append((done, total)))
    assert events[-1] == (len(paths), len(paths))
    assert all(total == len(paths) for _, total in events)
    dones = [done for done, _ in events]
    assert dones == sorted(dones)
    assert len(events) >= 2  # reported per batch, not only at the end

    # All cached: progress still ends at (total, total).
    events.clear()
    extract_features(paths, "bb|imagenet", CountingEncoder(), SIZE, cache,
                     on_progress=lambda done, total: events.append((done, total)))
    assert events[-1] == (len(paths), len(paths))


class FakeClock:
    """Seconds that pass only when the slow encoder below says so: the test never sleeps."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class SlowEncoder(CountingEncoder):
    """A backbone that takes ``seconds`` of the fake clock per photo (a big one, on a slow CPU)."""

    def __init__(self, clock, seconds):
        super().__init__()
        self.clock, self.seconds = clock, seconds

    def __call__(self):
        encode = super().__call__()

        def slow(batch):
            self.clock.now += self.seconds * len(batch)
            return encode(batch)

        return slow


@pytest.mark.parametrize("seconds_per_photo", [0.3, 0.05])
def test_progress_starts_at_zero_and_moves_at_least_every_second_with_a_slow_encoder(paths, cache, seconds_per_photo):
    """Issue 17, item 5: a batch of 32 photos at 0.3 s each was 10 s of one unmoving count; now the count is said
    before any work and then at least once per (fake) second, each time further on."""
    clock = FakeClock()
    encoder = SlowEncoder(clock, seconds_per_photo)
    seen = []
    extract_features(paths, "bb|imagenet", encoder, SIZE, cache, batch_size=32, clock=clock,
                     on_progress=lambda done, total: seen.append((clock.now, done, total, encoder.images_seen)))
    n = len(paths)
    assert seen[0] == (0.0, 0, n, 0)  # before the first photo was embedded (or even read)
    assert seen[-1][1:3] == (n, n)
    assert clock.now == pytest.approx(seconds_per_photo * n)  # every photo was embedded once, no more
    times = [when for when, *_ in seen] + [clock.now]
    assert max(b - a for a, b in zip(times, times[1:])) <= 1.0, seen
    dones = [done for _, done, _, _ in seen]
    assert dones == sorted(set(dones))  # each report is further on: the bar moves


def test_broken_files_are_skipped_with_reasons(tmp_path, cache):
    folder = make_image_folder(tmp_path / "data", n_per_class=3)
    good = sorted(str(p) for p in folder.rglob("*.png"))
    text = tmp_path / "notes.png"
    text.write_text("this is not an image")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(open(good[0], "rb").read()[:60])
    missing = tmp_path / "missing.png"
    paths = [str(text), good[0], str(empty), good[1], good[2], str(truncated), str(missing)] + good[3:]
    bad = {str(text), str(empty), str(truncated), str(missing)}

    events = []
    res = extract_features(paths, "bb|imagenet", CountingEncoder(), SIZE, cache, batch_size=4,
                           on_progress=lambda d, t: events.append((d, t)))
    assert [paths[i] for i in res.kept] == [p for p in paths if p not in bad]
    assert sorted(s["path"] for s in res.skipped) == sorted(bad)
    assert all(isinstance(s["reason"], str) and s["reason"] for s in res.skipped)
    reasons = {s["path"]: s["reason"] for s in res.skipped}
    assert "empty" in reasons[str(empty)]
    assert "cannot read" in reasons[str(missing)]
    assert res.features.shape == (len(good), 3)
    np.testing.assert_allclose(res.features, np.stack([mean_colour(paths[i]) for i in res.kept]), atol=1e-3)
    assert res.computed == len(good)
    assert events[-1] == (len(paths), len(paths))
    # Broken files are never cached.
    assert len(npy_files(cache)) == len(good)


def test_only_broken_files_gives_an_empty_result(tmp_path, cache):
    bad = tmp_path / "bad.png"
    bad.write_text("nope")
    enc = CountingEncoder()
    res = extract_features([str(bad)], "bb|imagenet", enc, SIZE, cache)
    assert res.kept == [] and res.features.shape[0] == 0
    assert [s["path"] for s in res.skipped] == [str(bad)]
    assert enc.images_seen == 0


# Encoders with replicas (TFLite engines): one copy per thread ------------------------------

class Replicated:
    """An encoder offering ``replicas(n)``, as a TFLite engine does: each copy records the threads that call it and
    the photos it embeds; the shared encoder itself must then never be called."""

    def __init__(self, fail_after: int | None = None):
        self.copies: list[dict] = []
        self.fail_after = fail_after
        self.lock = threading.Lock()
        self.embedded = 0

    def __call__(self, batch):
        raise AssertionError("the shared encoder was called although it has replicas")

    def replicas(self, n):
        def copy(record):
            def encode(batch):
                assert batch.dtype == np.uint8 and len(batch) == 1
                with self.lock:
                    record["threads"].add(threading.get_ident())
                    record["photos"] += 1
                    self.embedded += 1
                    if self.fail_after is not None and self.embedded > self.fail_after:
                        raise RuntimeError("engine failed")
                return batch.reshape(1, -1, 3).mean(axis=1)
            return encode

        records = [{"threads": set(), "photos": 0} for _ in range(n)]
        self.copies.extend(records)
        return [copy(r) for r in records]


@pytest.mark.parametrize("workers", [1, 3])
def test_replicated_encoder_embeds_each_photo_once_on_copies_each_used_by_one_thread(
        monkeypatch, tmp_path, cache, workers):
    monkeypatch.setattr(features, "_decode_workers", lambda: workers)
    folder = make_image_folder(tmp_path / "data", n_per_class=5)
    good = sorted(str(p) for p in folder.rglob("*.png"))
    broken = tmp_path / "broken.png"
    broken.write_bytes(open(good[0], "rb").read()[:60])
    paths = good[:4] + [str(broken)] + good[4:] + [str(tmp_path / "missing.png")]
    encoder, events = Replicated(), []
    res = extract_features(paths, "bb|imagenet", lambda: encoder, SIZE, cache,
                           on_progress=lambda d, t: events.append(d))
    assert len(encoder.copies) == workers
    assert all(len(c["threads"]) <= 1 for c in encoder.copies)  # a copy is never shared between threads
    assert sum(c["photos"] for c in encoder.copies) == len(good)  # each photo once
    assert [paths[i] for i in res.kept] == good  # input order, whatever thread finished first
    np.testing.assert_allclose(res.features, np.stack([mean_colour(p) for p in good]), atol=1e-3)
    assert sorted(s["path"] for s in res.skipped) == sorted([str(broken), str(tmp_path / "missing.png")])
    assert (res.cache_hits, res.computed) == (0, len(good)) and len(npy_files(cache)) == len(good)
    assert events == sorted(events) and events[-1] == len(paths)
    again = extract_features(paths, "bb|imagenet", lambda: Replicated(), SIZE, cache)
    assert again.cache_hits == len(good)
    np.testing.assert_array_equal(again.features, res.features)


def test_replicas_are_no_more_than_the_photos_to_embed(monkeypatch, tmp_path, cache, image_folder):
    monkeypatch.setattr(features, "_decode_workers", lambda: 4)
    one = [str(sorted(image_folder.rglob("*.png"))[0])]
    encoder = Replicated()
    extract_features(one, "bb|imagenet", lambda: encoder, SIZE, cache)
    assert len(encoder.copies) == 1


def test_a_failing_replica_raises_on_the_callers_thread_and_stops_the_others(monkeypatch, tmp_path, paths, cache):
    monkeypatch.setattr(features, "_decode_workers", lambda: 2)
    encoder = Replicated(fail_after=3)
    with pytest.raises(RuntimeError, match="engine failed"):
        extract_features(paths, "bb|imagenet", lambda: encoder, SIZE, cache)
    # The others stop after the photo they were on: far fewer attempts than photos.
    assert encoder.embedded <= 3 + 2 < len(paths)  # one failing attempt per thread at most


def test_replicas_hold_one_decoded_photo_per_thread(monkeypatch, tmp_path, cache):
    monkeypatch.setattr(features, "_decode_workers", lambda: 2)
    rng = np.random.default_rng(1)
    paths = [str(write_image(tmp_path / "many" / f"{k}.png", (k % 256, 90, 160), size=4, rng=rng))
             for k in range(300)]
    lock, state = threading.Lock(), {"decoded": 0, "max_alive": 0}
    encoder = Replicated()

    def transform(image, sha):
        with lock:
            state["decoded"] += 1
            state["max_alive"] = max(state["max_alive"], state["decoded"] - encoder.embedded)
        return image

    res = extract_features(paths, "k", lambda: encoder, 4, cache, transform=transform)
    assert res.computed == len(paths)
    assert state["max_alive"] <= 2


def test_embedding_starts_while_later_files_are_still_being_looked_up(tmp_path, paths):
    """The lookups (read, hash, cache) run ahead on their own thread: the first photo is embedded before the
    last file's lookup ends, instead of after every lookup (a big dataset waited for all of them)."""
    embedded = threading.Event()
    waited = []

    class SlowLastLookup(FeatureCache):
        def get(self, backbone_key, content_sha):
            if content_sha == last_sha:
                waited.append(embedded.wait(timeout=30))
            return super().get(backbone_key, content_sha)

    last_sha = hashlib.sha256(open(paths[-1], "rb").read()).hexdigest()

    class Signals(Replicated):  # an engine's copies take photos one at a time, as the lookups find them
        def replicas(self, n):
            def signal(encode):
                return lambda batch: (embedded.set(), encode(batch))[1]
            return [signal(encode) for encode in super().replicas(n)]

    res = extract_features(paths, "bb|imagenet", Signals, SIZE, SlowLastLookup(tmp_path / "c"))
    assert waited == [True]
    assert res.computed == len(paths) and res.kept == list(range(len(paths)))
