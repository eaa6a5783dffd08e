"""Progress in logs (no terminal): a line per tenth of the work, with the true share done."""

from meca_cli.console import progress


def test_plain_progress_lines_show_the_share_done_and_time_left(capsys):
    with progress("train", 40) as bar:
        for _ in range(40):
            bar.advance(1)
    lines = capsys.readouterr().err.splitlines()
    assert [line.split()[1] for line in lines] == [f"{p}%" for p in (2, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100)]
    assert "(3/40)" not in "".join(lines) and "left" in lines[0] and "left" not in lines[-1]
