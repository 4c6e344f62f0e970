"""The one redaction rule for everything a job writes."""

from a2v_core.redact import MASK, drop_masked, redact_tree, redact_uri


def test_passwords_in_uris_are_masked_wherever_they_appear():
    assert redact_uri("s3://AKIA:s3cr3t@minio:9000/bucket") == f"s3://{MASK}@minio:9000/bucket"
    line = "error: --archive http://u:p@host/a not found; see https://v:q@other/x"
    assert "u:p" not in redact_uri(line) and "v:q" not in redact_uri(line)
    assert redact_uri("s3://bucket/key@2.wav") == "s3://bucket/key@2.wav"  # no userinfo
    assert redact_uri("/data/archive") == "/data/archive"


def test_secret_keys_are_masked_and_trees_copied():
    tree = {
        "tracking": {"uri": "postgresql://a2v:pw@db/mlflow", "token": "t0k", "password": ""},
        "storage": [{"aws_secret_access_key": "xyz"}, "gs://k:s@bucket"],
        "run": {"name": "keep", "steps": 5, "api_key": None},
    }
    safe = redact_tree(tree)
    assert safe["tracking"] == {
        "uri": f"postgresql://{MASK}@db/mlflow",
        "token": MASK,
        "password": "",
    }
    assert safe["storage"] == [{"aws_secret_access_key": MASK}, f"gs://{MASK}@bucket"]
    assert safe["run"] == {"name": "keep", "steps": 5, "api_key": None}  # nothing to hide
    assert tree["tracking"]["token"] == "t0k"  # the input is not changed


def test_masked_values_read_back_as_unset():
    safe = redact_tree({"tracking": {"uri": "http://u:p@h", "token": "t"}, "n": 3})
    assert drop_masked(safe) == {"tracking": {"uri": None, "token": None}, "n": 3}
