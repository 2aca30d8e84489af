"""The `eoid` command line: click only."""
import click


@click.group()
def main() -> None:
    """eoid: zero-shot HOI detection by distilling a cached CLIP teacher into a CDN student."""
