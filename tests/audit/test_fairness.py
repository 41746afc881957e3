"""Group fairness numbers must equal Fairlearn's; intervals must agree with its bootstrap."""

import numpy as np
import pytest

from trustfm.audit.fairness.group import group_fairness


def _case(n=1200, k=2, seed=0):
    rng = np.random.default_rng(seed)
    groups = rng.choice(["a", "b", "c"], size=n, p=[0.5, 0.35, 0.15])
    race = rng.choice(["x", "y"], size=n)
    y = rng.integers(0, k, size=n)
    # group c is predicted worse and selected more often
    noise = np.where(groups == "c", 0.4, 0.15)
    flip = rng.random(n) < noise
    pred = np.where(flip, rng.integers(0, k, size=n), y)
    pred = np.where((groups == "c") & (rng.random(n) < 0.2), k - 1, pred)
    return y, pred, groups, race


@pytest.mark.parametrize("k", [2, 3])
def test_group_metrics_and_disparities_equal_fairlearn(k):
    from fairlearn.metrics import (MetricFrame, demographic_parity_difference, demographic_parity_ratio,
                                   equalized_odds_difference, false_positive_rate, selection_rate,
                                   true_positive_rate)
    from sklearn.metrics import balanced_accuracy_score

    y, pred, groups, _ = _case(k=k)
    names = [str(i) for i in range(k)]
    pos = k - 1
    result = group_fairness(y, pred, {"g": groups}, names, bootstrap_samples=0, positive_label=names[pos])
    yb, pb = (y == pos).astype(int), (pred == pos).astype(int)
    frame = MetricFrame(metrics={"selection_rate": selection_rate, "tpr": true_positive_rate,
                                 "fpr": false_positive_rate}, y_true=yb, y_pred=pb, sensitive_features=groups)
    ba = MetricFrame(metrics=balanced_accuracy_score, y_true=y, y_pred=pred, sensitive_features=groups)
    sl = result.slice("g")
    for gm in sl.groups:
        assert gm.metrics["selection_rate"].value == pytest.approx(frame.by_group.loc[gm.group, "selection_rate"])
        assert gm.metrics["tpr"].value == pytest.approx(frame.by_group.loc[gm.group, "tpr"])
        assert gm.metrics["fpr"].value == pytest.approx(frame.by_group.loc[gm.group, "fpr"])
        assert gm.metrics["balanced_accuracy"].value == pytest.approx(ba.by_group.loc[gm.group])
    d = sl.disparities
    assert d["demographic_parity_difference"].value == pytest.approx(demographic_parity_difference(yb, pb, sensitive_features=groups))
    assert d["demographic_parity_ratio"].value == pytest.approx(demographic_parity_ratio(yb, pb, sensitive_features=groups))
    assert d["equalized_odds_difference"].value == pytest.approx(equalized_odds_difference(yb, pb, sensitive_features=groups))
    assert sl.worst_group["accuracy"] == "c"


def test_our_vectorised_statistics_equal_fairlearn_point_values():
    # the bootstrap uses _group_stats; on the identity resample it must give Fairlearn's numbers
    from trustfm.audit.fairness.group import _disparities, _group_stats

    y, pred, groups, _ = _case(k=3, seed=4)
    result = group_fairness(y, pred, {"g": groups}, ["0", "1", "2"], bootstrap_samples=0, positive_label="2")
    names, ids = np.unique(groups, return_inverse=True)
    confusion = np.zeros((len(names), 3, 3), dtype=np.int64)
    np.add.at(confusion, (ids, y, pred), 1)
    stats = _group_stats(confusion, 2)
    for i, gm in enumerate(result.slice("g").groups):
        for metric, interval in gm.metrics.items():
            assert stats[metric][i] == pytest.approx(interval.value)
    for metric, value in _disparities(stats).items():
        assert value == pytest.approx(result.slice("g").disparities[metric].value)


def test_bootstrap_intervals_agree_with_fairlearn_metricframe_bootstrap():
    from fairlearn.metrics import MetricFrame, selection_rate

    y, pred, groups, _ = _case(n=1500, seed=2)
    result = group_fairness(y, pred, {"g": groups}, ["0", "1"], bootstrap_samples=1000, seed=0)
    frame = MetricFrame(metrics=selection_rate, y_true=y, y_pred=pred, sensitive_features=groups,
                        n_boot=300, ci_quantiles=[0.025, 0.975], random_state=0)
    for gm in result.slice("g").groups:
        low_ref = frame.by_group_ci[0].loc[gm.group]
        high_ref = frame.by_group_ci[1].loc[gm.group]
        interval = gm.metrics["selection_rate"]
        width = high_ref - low_ref
        assert abs(interval.low - low_ref) < 0.25 * width and abs(interval.high - high_ref) < 0.25 * width


def test_intersections_and_small_group_warnings():
    y, pred, groups, race = _case(n=300, seed=3)
    result = group_fairness(y, pred, {"g": groups, "race": race}, ["0", "1"], bootstrap_samples=100, min_group_size=30)
    assert [s.name for s in result.slices] == ["g", "race", "g & race"]
    inter = result.slice("g & race")
    assert {gm.group for gm in inter.groups} == {f"{a} & {b}" for a in "abc" for b in "xy"}
    assert any(gm.too_small for gm in inter.groups) and inter.warnings
    assert sum(gm.n for gm in inter.groups) == 300


# --- counterfactual rewriting and audit ---------------------------------------------------------

from trustfm.audit.fairness.counterfactual import counterfactual_audit  # noqa: E402
from trustfm.data.identity_terms import IdentityTerms  # noqa: E402


@pytest.mark.parametrize("text,axis,expected", [
    ("She gave her book to him and thanked her.", "gender", "He gave his book to her and thanked him."),
    ("A man and his wife", "gender", "A woman and her husband"),
    ("He is an Asian man.", "race_ethnicity", "He is a Black man."),
    ("An old friend of my Muslim neighbour", "religion", "An old friend of my Christian neighbour"),
    ("MY GAY FRIEND", "sexual_orientation", "MY STRAIGHT FRIEND"),
])
def test_identity_rewrites_keep_grammar_and_case(text, axis, expected):
    assert IdentityTerms.default().counterfactuals(text, axis, max_variants=1)[0][1] == expected


def test_terms_inside_other_words_are_not_rewritten():
    terms = IdentityTerms.default()
    assert terms.counterfactuals("a white-collar job in Manhattan", "race_ethnicity") == []
    assert terms.counterfactuals("the shepherd said hello", "gender") == []


def test_counterfactual_audit_finds_the_term_the_model_reacts_to():
    texts = ["my muslim neighbour is kind", "my christian neighbour is kind", "he is kind", "a sunny day"]

    def predict(batch):  # a model that is biased against one religion term only
        p = np.array([0.2 if "muslim" in t.lower() else 0.8 for t in batch])
        return np.column_stack([1 - p, p])

    result = counterfactual_audit(texts, predict, ["neg", "pos"], axes=["religion", "gender"],
                                  max_variants=9, bootstrap_samples=200)
    religion = {a.axis: a for a in result.axes}["religion"]
    assert religion.texts == 2 and religion.pairs == 18
    # swapping 'muslim' away always flips; swapping 'christian' flips only when it becomes 'muslim'
    assert religion.flip_rate.value == pytest.approx(10 / 18)
    assert religion.mean_change_by_target["muslim"] == pytest.approx(-0.6)
    assert religion.worst_pairs[0].flipped
    gender = {a.axis: a for a in result.axes}["gender"]
    assert gender.flip_rate.value == 0.0 and gender.mean_abs_change.value == 0.0


# --- mitigations ---------------------------------------------------------------------------------

from trustfm.train.fairness import BalancedSampling, reweighing_weights  # noqa: E402


def test_reweighing_makes_label_independent_of_group():
    rng = np.random.default_rng(0)
    groups = rng.choice([0, 1, 2], size=5000, p=[0.6, 0.3, 0.1])
    labels = (rng.random(5000) < np.array([0.7, 0.4, 0.2])[groups]).astype(int)
    w = reweighing_weights(groups, labels)
    assert w.sum() == pytest.approx(5000)
    overall = np.average(labels, weights=w)
    for g in range(3):
        assert np.average(labels[groups == g], weights=w[groups == g]) == pytest.approx(overall)


def test_balanced_sampling_draws_every_cell_equally():
    groups = np.array([0] * 900 + [1] * 100)
    labels = np.array([0, 1] * 450 + [0] * 90 + [1] * 10)
    sampler = BalancedSampling(groups, labels, seed=1)
    rows = sampler.on_epoch_rows(None, 1, np.arange(1000))
    assert len(rows) == 1000
    cells = np.bincount(groups[rows] * 2 + labels[rows], minlength=4)
    assert np.all(np.abs(cells - 250) < 60)
    assert np.array_equal(rows, sampler.on_epoch_rows(None, 1, np.arange(1000)))  # same (seed, epoch), same rows


def test_counterfactual_augmentation_adds_labelled_copies():
    from trustfm.data.augment import counterfactual_augment
    from trustfm.data.validate import LabelledTexts

    part = LabelledTexts(file="f", texts=["she is great", "the food was cold", "my muslim friend"],
                         labels=["pos", "neg", "pos"], rows=np.array([1, 2, 3]), groups={"g": ["a", "b", "a"]})
    augmented, added = counterfactual_augment(part, axes=["gender", "religion"], variants=1)
    assert added == 2 and len(augmented) == 5
    assert augmented.texts[3] == "he is great" and augmented.labels[3] == "pos" and augmented.rows[3] == 1
    assert augmented.labels[4] == "pos" and "muslim" not in augmented.texts[4]


def test_representation_check_flags_small_and_skewed_groups():
    from trustfm.audit.fairness.representation import representation_check

    labels = ["pos"] * 500 + ["neg"] * 500 + ["pos"] * 20
    groups = {"g": ["a"] * 1000 + ["b"] * 20}
    result = representation_check(labels, groups, ["neg", "pos"], min_count=30, min_share=0.05)
    by_group = {g.group: g for g in result.columns["g"]}
    assert by_group["a"].flags == []
    assert any("only 20 rows" in f for f in by_group["b"].flags)
    assert any("no rows labelled neg" in f for f in by_group["b"].flags)
    assert result.flagged == 1


# --- probe sets from ../shared/data ----------------------------------------------------------------

def test_probe_sets_load_with_their_groups():
    from collections import Counter

    from conftest import shared_data
    from trustfm.data.probes import load_eec_style, load_hatecheck, load_jigsaw_templates

    hatecheck = load_hatecheck(shared_data("hatecheck"))
    assert len(hatecheck) == 3728 and Counter(hatecheck.labels)["hateful"] == 2563
    assert Counter(hatecheck.groups["target_ident"])["none"] == 292
    assert not any(t.endswith(" ") for t in hatecheck.texts)
    jigsaw = load_jigsaw_templates(shared_data("jigsaw_sentence_templates"))
    identities = Counter(jigsaw.groups["identity"])
    assert len(jigsaw) == 76564 and identities["none"] == 864 and len(identities) == 51
    assert "cis" not in identities
    template_rows = [i for i, t in enumerate(jigsaw.groups["template"]) if t == "you_occupation"]
    assert {jigsaw.groups["identity"][i] for i in template_rows} == {"none"}
    eec = load_eec_style()
    assert set(eec.groups) == {"gender", "race", "emotion"}
    assert Counter(eec.groups["gender"])["female"] == Counter(eec.groups["gender"])["male"]


def test_a_users_probe_file_uses_every_other_column_as_a_group(tmp_path):
    from trustfm.data.probes import load_probe
    from trustfm.errors import ConfigError

    path = tmp_path / "probe.csv"
    path.write_text("text,label,dialect,age\nhi there,ok,aae,young\nyou idiot,abusive,sae,old\n")
    probe = load_probe(str(path), positive_label="abusive")
    assert probe.positive_label == "abusive" and set(probe.groups) == {"dialect", "age"}
    assert load_probe(str(path)).positive_label == "ok"  # two labels: the last in sort order
    with pytest.raises(ConfigError):
        load_probe("no-such-probe")


def test_rate_gaps_skip_groups_where_the_rate_is_undefined():
    from fairlearn.metrics import equalized_odds_difference

    # group "none" has no positive rows: its TPR is undefined (Fairlearn scores it 0)
    y = np.array([1, 1, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0])
    pred = np.array([1, 1, 0, 1, 1, 0, 0, 0, 1, 0, 0, 0])
    groups = np.array(["a"] * 4 + ["b"] * 4 + ["none"] * 4)
    sl = group_fairness(y, pred, {"g": groups}, ["0", "1"], bootstrap_samples=50, min_group_size=4).slice("g")
    assert sl.disparities["equalized_odds_difference"].value == pytest.approx(
        equalized_odds_difference(y, pred, sensitive_features=groups))
    assert sl.disparities["equalized_odds_difference"].value == pytest.approx(1.0)  # TPR 1.0 (a) vs "0" (none)
    assert sl.disparities["tpr_gap"].value == pytest.approx(0.5)  # a: 1.0, b: 0.5; none left out
    assert sl.disparities["fpr_gap"].value == pytest.approx(0.5)  # a: 0.5, b: 0.0, none: 0.25
    assert any("no positive rows" in w for w in sl.warnings)


def test_gaps_leave_out_groups_below_the_minimum_size_and_say_so():
    """A group of 4 rows can show any gap by chance: the gaps are Fairlearn's over the judged groups only."""
    from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference

    y, pred, groups, _ = _case(n=600)
    groups = groups.astype(object)
    groups[:4] = "tiny"  # a group of 4 rows, all predicted positive
    pred = pred.copy()
    pred[:4] = 1
    result = group_fairness(y, pred, {"g": groups}, ["0", "1"], min_group_size=30, bootstrap_samples=200)
    sl = result.slice("g")
    assert sl.excluded_groups == {"tiny": 4}
    judged = groups != "tiny"
    assert sl.disparities["demographic_parity_difference"].value == pytest.approx(
        demographic_parity_difference(y[judged], pred[judged], sensitive_features=groups[judged]))
    assert sl.disparities["equalized_odds_difference"].value == pytest.approx(
        equalized_odds_difference(y[judged], pred[judged], sensitive_features=groups[judged]))
    assert sl.disparities["demographic_parity_difference"].low is not None  # with its interval
    assert any("left out as too small to judge: 'tiny' (4 rows)" in w for w in sl.warnings)
    assert next(g for g in sl.groups if g.group == "tiny").too_small

    # no two groups large enough: no gap is judged, and a gate rule on one is not applicable
    small = group_fairness(y[:9], pred[:9], {"g": np.array(["a"] * 5 + ["b"] * 4)}, ["0", "1"], min_group_size=30,
                           bootstrap_samples=50)
    assert all(np.isnan(v.value) for v in small.slice("g").disparities.values())
    assert "g.dp_difference" not in small.metrics()
    assert "fewer than two groups of at least 30 rows" in small.undefined_metrics()["g.dp_difference"]
    assert "max_dp_difference" in small.undefined_metrics()


def test_a_rule_on_a_gap_that_cannot_be_judged_is_not_applicable(tmp_path):
    from trustfm.report.policy import evaluate_policy, load_policy

    policy = tmp_path / "policy.yaml"
    policy.write_text("name: p\nrules:\n  - accuracy >= 0.5\n  - fairness.g.dp_difference <= 0.1\n")
    name, rules, not_applicable = load_policy(policy)
    undefined = {"fairness.g.dp_difference": "slice 'g' has fewer than two groups of at least 30 rows"}
    outcome = evaluate_policy(name, rules, {"accuracy": 0.9}, undefined=undefined)
    assert outcome.passed and not outcome.outcomes[1].applicable and "fewer than two" in outcome.outcomes[1].reason
    strict = evaluate_policy(name, rules, {"accuracy": 0.9}, undefined=undefined, not_applicable="fail")
    assert not strict.passed
    policy.write_text("name: p\nnot_applicable: fail\nrules:\n  - fairness.g.dp_difference <= 0.1\n")
    assert load_policy(policy)[2] == "fail"


def test_more_than_two_classes_are_audited_one_vs_rest_without_a_silent_positive_class():
    from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference, selection_rate
    from fairlearn.metrics import MetricFrame

    y, pred, groups, _ = _case(k=4)
    names = ["anger", "joy", "optimism", "sadness"]
    result = group_fairness(y, pred, {"g": groups}, names, bootstrap_samples=200)
    assert result.positive_label is None
    sl = result.slice("g")
    per_class = {}
    for c, name in enumerate(names):
        yb, pb = (y == c).astype(int), (pred == c).astype(int)
        per_class[name] = demographic_parity_difference(yb, pb, sensitive_features=groups)
        assert sl.disparities[f"demographic_parity_difference.{name}"].value == pytest.approx(per_class[name])
        assert sl.disparities[f"equalized_odds_difference.{name}"].value == pytest.approx(
            equalized_odds_difference(yb, pb, sensitive_features=groups))
        frame = MetricFrame(metrics=selection_rate, y_true=yb, y_pred=pb, sensitive_features=groups)
        for gm in sl.groups:
            assert gm.metrics[f"selection_rate.{name}"].value == pytest.approx(frame.by_group.loc[gm.group])
    headline = sl.disparities["demographic_parity_difference"]
    assert headline.value == pytest.approx(max(per_class.values())) and headline.low is not None
    assert "selection_rate" not in sl.groups[0].metrics  # no class is "the" positive one
    metrics = result.metrics()
    assert "g.dp_difference" in metrics and "g.demographic_parity_difference.sadness" in metrics


def test_colour_words_are_swapped_only_where_they_name_people_and_hashtags_keep_their_names():
    import numpy as np

    from trustfm.data.perturbations import names

    terms = IdentityTerms.default()
    assert terms.counterfactuals("I wear black to work", "race_ethnicity") == []
    assert terms.colour_uses("I wear black to work, in the white house", "race_ethnicity") == 2
    assert ("white", "a white woman spoke") in terms.counterfactuals("a black woman spoke", "race_ethnicity")
    rewritten = dict(terms.counterfactuals("a black woman wore black", "race_ethnicity"))
    assert rewritten["white"] == "a white woman wore black"  # the colour stays
    result = counterfactual_audit(["I wear black", "a black man smiled"], lambda t: np.full((len(t), 2), 0.5),
                                  ["neg", "pos"], bootstrap_samples=0, axes=["race_ethnicity"])
    assert result.left_alone == {"race_ethnicity": 1}
    rng = np.random.default_rng(0)
    assert "#Sleep" in names("Time to #Sleep, said John", rng) and "John" not in names("Time to #Sleep, said John", rng)
    assert names("#Sleep well @Anna http://Example.com", rng) is None
