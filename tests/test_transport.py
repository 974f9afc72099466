import pytest

from app.transport import parse_routes


def test_push_endpoints_parse_into_routes():
    routes = parse_routes("a=http://127.0.0.1:1/, b=http://127.0.0.1:2/,a=http://127.0.0.1:3/")
    assert routes == {
        "a": ["http://127.0.0.1:1/", "http://127.0.0.1:3/"],
        "b": ["http://127.0.0.1:2/"],
    }


@pytest.mark.parametrize("text", ["a", "a=ftp://x", "=http://x"])
def test_bad_push_endpoints_are_named(text: str):
    with pytest.raises(ValueError, match="expected topic=http"):
        parse_routes(text)
