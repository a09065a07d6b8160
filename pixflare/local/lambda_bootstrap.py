"""The first code an execution environment runs, like the python3.12 runtime's bootstrap.

Started as ``python -I -S -B lambda_bootstrap.py HANDLER OPT_DIR`` with cwd = the task
root. It sets sys.path the way Lambda's python3.12 runtime does, then hands over to
the Runtime Interface Client (awslambdaric), which imports the handler and talks to
the Runtime API named by AWS_LAMBDA_RUNTIME_API.

This file runs in the function's interpreter, not the stack's: it must import
nothing from pixflare (nor anything outside the standard library before sys.path
is set).
"""

import os
import sys


def lambda_sys_path(task_root: str, opt_dir: str, runtime_dir: str) -> list[str]:
    """Lambda's order: task root, layers, runtime, then the interpreter's stdlib."""
    stdlib = [entry for entry in sys.path if entry and "site-packages" not in entry]
    return [
        task_root,
        os.path.join(opt_dir, "python", "lib", "python3.12", "site-packages"),
        os.path.join(opt_dir, "python"),
        runtime_dir,
        *stdlib,
    ]


def main() -> None:
    if len(sys.argv) != 3:
        sys.stderr.write("usage: lambda_bootstrap.py HANDLER OPT_DIR\n")
        sys.exit(2)
    handler, opt_dir = sys.argv[1], sys.argv[2]
    task_root = os.environ["LAMBDA_TASK_ROOT"]
    runtime_dir = os.environ["LAMBDA_RUNTIME_DIR"]
    sys.path[:] = lambda_sys_path(task_root, opt_dir, runtime_dir)
    sys.argv = ["awslambdaric", handler]

    from awslambdaric import __main__ as ric

    ric.main(["awslambdaric", handler])


if __name__ == "__main__":
    main()
