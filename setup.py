"""Loa: agent for commune loudspeaker controllers, and its thin central server."""

from setuptools import find_packages, setup

setup(
    name="loa",
    version="0.1.0",
    description="Commune loudspeaker controller agent: schedules, libVLC playback, FM relay, relays",
    python_requires=">=3.11",
    packages=find_packages(
        include=["foundation*", "agent*", "drivers*", "fm_receiver*", "scheduler*", "protocol*", "central*"]
    ),
    package_data={"central": ["templates/*.html", "static/*.css"]},  # the web pages
    install_requires=[
        "python-vlc>=3.0.18122",
        "gpiozero>=2.0",
        "paho-mqtt>=2.0",
        "pyserial>=3.5",
        "pyrtlsdr>=0.3.0,<0.4",  # 0.4+ needs a newer librtlsdr than Debian 12 ships
        "pyyaml>=6.0",
        "requests>=2.28",
        "sqlite-utils>=3.35",
        "python-dateutil>=2.8",
        "numpy>=1.24",
        "scipy>=1.10",
        # Debian 12 / Raspberry Pi OS Bookworm: python3-jwt 2.6, python3-cryptography 38 (flash.sh
        # installs them; the box uses them, and their OpenSSL, not wheels of its own)
        "PyJWT>=2.6",
        "cryptography>=38",
        # the central server (loa-central)
        "fastapi>=0.110",
        "uvicorn>=0.29",
        "sqlalchemy>=2.0",
        "argon2-cffi>=23.1",
        "jinja2>=3.1",
        "python-multipart>=0.0.9",
        "psycopg[binary]>=3.1",
        "mutagen>=1.46",  # duration of uploaded MP3, OGG and WAV
        "defusedxml>=0.7",  # upstream RSS / Atom feeds: no DTDs, no entities
    ],
    extras_require={
        "dev": [
            "pytest>=7.4",
            "hypothesis>=6.80",
            "ruff>=0.5",
            "mypy>=1.8",
            "import-linter>=2.0",
            "wheel",  # tests/test_flash.py builds this project's wheel offline (--no-build-isolation)
            "types-PyYAML",
            "types-requests",
            "types-python-dateutil",
            "types-defusedxml",
            "httpx>=0.27",  # FastAPI's TestClient
            "playwright>=1.40",  # browser tests, driving Debian's chromium (never `playwright install`)
        ],
    },
    entry_points={
        "console_scripts": [
            "loa-agent=agent.daemon:main",
            "loa=agent.cli:main",
            "loa-central=central.cli:main",
        ],
    },
)
