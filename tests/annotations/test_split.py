from annotations.split import group_key, group_split


def test_group_key():
    assert group_key("dir/youtube-60_jpg.rf.abc.jpg", r"^(.*?)_jpg") == "youtube-60"
    assert group_key("x.jpg", None) == "x.jpg"
    assert group_key("nomatch.jpg", r"^(obs\d+)_") == "nomatch.jpg"


def test_group_split_never_shares_a_group_and_is_reproducible():
    # the frames of a group are far apart in the list, so a split by item would scatter them
    names = [f"obs{g}_{i}.jpg" for i in range(3) for g in range(40)]
    labels = ["a" if g % 2 else "b" for _ in range(3) for g in range(40)]
    tr, va = group_split(names, labels, val_fraction=0.25, seed=1, group_regex=r"^(obs\d+)_")
    assert sorted(tr + va) == list(range(len(names)))
    groups = lambda idx: {names[i].split("_")[0] for i in idx}  # noqa: E731
    assert not groups(tr) & groups(va)
    assert len(groups(va)) * 3 == len(va)  # whole groups only
    # without the regex each file is its own group: the same list splits frames of one observation apart
    tr1, va1 = group_split(names, labels, val_fraction=0.25, seed=1)
    assert groups(tr1) & groups(va1)
    assert (tr, va) == group_split(names, labels, val_fraction=0.25, seed=1, group_regex=r"^(obs\d+)_")
    assert (tr, va) != group_split(names, labels, val_fraction=0.25, seed=2, group_regex=r"^(obs\d+)_")
    # stratified: each class close to a quarter in validation
    for cls in "ab":
        n_val = sum(labels[i] == cls for i in va)
        assert 12 <= n_val <= 18


def test_group_split_stratifies_photos_with_several_classes_and_none():
    # detection photos: some hold a and b, some only c, some nothing (negatives); each kind about 30 % in val
    names = [f"img{i}.jpg" for i in range(60)]
    labels = [["a", "b"] if i % 3 == 0 else ["c"] if i % 3 == 1 else [] for i in range(60)]
    tr, va = group_split(names, labels, val_fraction=0.3, seed=0)
    assert sorted(tr + va) == list(range(60))
    for kind in range(3):
        assert 5 <= sum(i % 3 == kind for i in va) <= 7  # 30 % of 20
