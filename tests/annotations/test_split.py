from annotations.split import group_key, group_split


def test_group_key():
    assert group_key("dir/youtube-60_jpg.rf.abc.jpg", r"^(.*?)_jpg") == "youtube-60"
    assert group_key("x.jpg", None) == "x.jpg"
    assert group_key("nomatch.jpg", r"^(obs\d+)_") == "nomatch.jpg"


def test_group_split_never_shares_a_group_and_is_reproducible():
    names = [f"obs{g}_{i}.jpg" for g in range(40) for i in range(3)]
    labels = ["a" if g % 2 else "b" for g in range(40) for _ in range(3)]
    tr, va = group_split(names, labels, val_fraction=0.25, seed=1, group_regex=r"^(obs\d+)_")
    assert sorted(tr + va) == list(range(len(names)))
    groups = lambda idx: {names[i].split("_")[0] for i in idx}  # noqa: E731
    assert not groups(tr) & groups(va)
    assert (tr, va) == group_split(names, labels, val_fraction=0.25, seed=1, group_regex=r"^(obs\d+)_")
    assert (tr, va) != group_split(names, labels, val_fraction=0.25, seed=2, group_regex=r"^(obs\d+)_")
    # stratified: each class close to a quarter in validation
    for cls in "ab":
        n_val = sum(labels[i] == cls for i in va)
        assert 12 <= n_val <= 18


def test_group_split_multi_label_items():
    names = [f"img{i}.jpg" for i in range(20)]
    labels = [["a", "b"] if i % 2 else [] for i in range(20)]
    tr, va = group_split(names, labels, val_fraction=0.3, seed=0)
    assert va and tr and not set(tr) & set(va)
