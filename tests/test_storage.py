"""Where Ray Train checkpoints go: local paths on one host, shared storage across hosts."""

import pytest

from curriculum.adapters.storage import StorageError, check_storage, is_shared_uri, storage_scheme, workers_fit

DEFAULT = "/runs/x/ray"


@pytest.mark.parametrize(
    "uri", ["s3://bucket/ray", "gs://bucket/a/b", "S3://Bucket/x", "abfss://c@acct/x", "hdfs://namenode:8020/ray"]
)
def test_uris_with_a_scheme_pass_through_whatever_the_cluster(uri):
    assert check_storage(uri, ["10.0.0.1", "10.0.0.2", "10.0.0.3"], 8, local_default=DEFAULT) == uri
    assert check_storage(uri, ["10.0.0.1"], 1, local_default=DEFAULT, may_add_nodes=True) == uri


def test_one_host_takes_a_local_path_or_the_default():
    assert check_storage("/shared/ckpt", ["10.0.0.1"], 1, local_default=DEFAULT) == "/shared/ckpt"
    assert check_storage(None, ["10.0.0.1"], 4, local_default=DEFAULT) == DEFAULT
    assert check_storage("file:///shared/ckpt", ["10.0.0.1"], 2, local_default=DEFAULT) == "file:///shared/ckpt"


def test_several_nodes_on_one_host_share_its_disk():
    hosts = ["127.0.0.1", "127.0.0.1", "127.0.0.1"]
    assert check_storage("/tmp/shared", hosts, 3, local_default=DEFAULT) == "/tmp/shared"
    assert check_storage(None, hosts, 3, local_default=DEFAULT) == DEFAULT


@pytest.mark.parametrize("storage", [None, "/tmp/ckpt", "relative/dir", "file:///tmp/ckpt", "C:\\runs"])
@pytest.mark.parametrize("workers", [1, 2])
def test_several_hosts_refuse_a_local_path_in_one_line_naming_the_setting(storage, workers):
    with pytest.raises(StorageError) as caught:
        check_storage(storage, ["10.0.0.1", "10.0.0.2"], workers, local_default=DEFAULT)
    message = str(caught.value)
    assert message.startswith("scaling.storage") and "\n" not in message
    assert "2 host(s)" in message and "s3://" in message
    assert isinstance(caught.value, ValueError)


def test_nodes_yet_to_join_count_as_other_hosts():
    with pytest.raises(StorageError, match="yet to join"):
        check_storage(None, ["10.0.0.1"], 1, local_default=DEFAULT, may_add_nodes=True)


def test_an_empty_setting_is_an_error():
    with pytest.raises(StorageError, match="scaling.storage"):
        check_storage("  ", ["10.0.0.1"], 1, local_default=DEFAULT)


def test_scheme_detection():
    assert storage_scheme("s3://b/x") == "s3" and storage_scheme("GS://b") == "gs"
    assert storage_scheme("/abs/path") is None and storage_scheme("rel/path") is None
    assert storage_scheme("C:\\runs") is None  # a Windows drive, not a scheme
    assert is_shared_uri("s3://b") and not is_shared_uri("file:///x") and not is_shared_uri("/x")


def test_workers_fit_counts_node_by_node():
    cpu_head = {"CPU": 0.0, "memory": 1e9}
    gpu_node = {"CPU": 48.0, "GPU": 4.0}
    per_gpu_worker = {"CPU": 4.0, "GPU": 1.0}
    assert not workers_fit([cpu_head], per_gpu_worker, 1), "a CPU-only head cannot hold a GPU worker"
    assert workers_fit([cpu_head, gpu_node], per_gpu_worker, 4)
    assert not workers_fit([cpu_head, gpu_node], per_gpu_worker, 8)
    assert workers_fit([cpu_head, gpu_node, gpu_node], per_gpu_worker, 8)
    # Two 1-CPU nodes hold two 1-CPU workers, but not one 2-CPU worker: a worker never spans nodes.
    assert workers_fit([{"CPU": 1.0}, {"CPU": 1.0}], {"CPU": 1.0}, 2)
    assert not workers_fit([{"CPU": 1.0}, {"CPU": 1.0}], {"CPU": 2.0}, 1)
    assert workers_fit([{"CPU": 0.9}], {"CPU": 0.3}, 3), "0.9 / 0.3 must not round down to 2"
    assert workers_fit([{"CPU": 2.0}], {"CPU": 1.0, "GPU": 0.0}, 2), "a zero request is no constraint"
