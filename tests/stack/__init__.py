"""The whole stack under ``airflow standalone``: a package, so the one stack its tests share
(``conftest.py``) is stopped as soon as its last test has run."""
