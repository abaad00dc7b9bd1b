"""The integration fixtures' port helper never hands out the same port twice."""


def test_free_port_never_repeats_a_port_within_the_test_process(ray_nodes):
    ports = [ray_nodes.free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
    assert all(1024 < port < 65536 for port in ports)
