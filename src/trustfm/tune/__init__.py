"""Hyper-parameter search on Optuna whose trials are normal run folders, judged by validation metrics, latency and
the audits, with the privacy cost of a DP search accounted as a whole (:func:`trustfm.tune.study.tune_study`)."""
