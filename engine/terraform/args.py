"""Terraform argument lists, built by pure functions (STYLE 4).

Every command gets ``-no-color`` and ``-json``; those that accept it also get
``-input=false`` (``output`` and ``validate`` reject that flag, and ``TF_INPUT=0`` in the
environment covers them). Variable values never appear here: they go to a ``*.tfvars.json``
file that the runner writes with mode 0600, because argv is visible to every user in ``ps``.

Example:
    >>> " ".join(plan_args(variables={"agent_token": "s3cret"}))
    'plan -input=false -no-color -json -out=plan.bin -var-file=slipstream.tfvars.json'
    >>> apply_args()
    ['apply', '-input=false', '-no-color', '-json', 'plan.bin']
"""

from __future__ import annotations

from collections.abc import Mapping

PLAN_FILE = "plan.bin"
DESTROY_PLAN_FILE = "destroy.bin"
# Not ``*.auto.tfvars.json``: values reach Terraform only where we pass the file.
VARS_FILE = "slipstream.tfvars.json"

_COMMON = ["-input=false", "-no-color"]


def init_args(json: bool = True) -> list[str]:
    """``terraform init``; ``json=False`` for a Terraform older than 1.9, which lacks ``-json``.

    Example:
        >>> init_args()
        ['init', '-input=false', '-no-color', '-json']
        >>> init_args(json=False)
        ['init', '-input=false', '-no-color']
    """
    return ["init", *_COMMON, *(["-json"] if json else [])]


def plan_args(
    out: str = PLAN_FILE,
    destroy: bool = False,
    variables: Mapping[str, object] | None = None,
    var_file: str | None = None,
) -> list[str]:
    """``terraform plan`` saving the plan to ``out``.

    Only whether there are ``variables`` matters here: their values live in ``var_file``
    (``VARS_FILE`` by default), which the caller writes.

    Example:
        >>> plan_args(out="destroy.bin", destroy=True)
        ['plan', '-input=false', '-no-color', '-json', '-out=destroy.bin', '-destroy']
        >>> plan_args(var_file="site.tfvars.json")[-1]
        '-var-file=site.tfvars.json'
    """
    args = ["plan", *_COMMON, "-json", f"-out={out}"]
    if destroy:
        args.append("-destroy")
    if variables or var_file:
        args.append(f"-var-file={var_file or VARS_FILE}")
    return args


def apply_args(plan: str = PLAN_FILE) -> list[str]:
    """``terraform apply`` of exactly the saved plan ``plan`` (no approval prompt exists then).

    Example:
        >>> apply_args("destroy.bin")
        ['apply', '-input=false', '-no-color', '-json', 'destroy.bin']
    """
    return ["apply", *_COMMON, "-json", plan]


def destroy_args(variables: Mapping[str, object] | None = None) -> list[list[str]]:
    """The two commands of a destroy: plan it into ``DESTROY_PLAN_FILE``, then apply that plan.

    Example:
        >>> for args in destroy_args({"agent_token": "s3cret"}):
        ...     print(" ".join(args))
        plan -input=false -no-color -json -out=destroy.bin -destroy -var-file=slipstream.tfvars.json
        apply -input=false -no-color -json destroy.bin
    """
    return [
        plan_args(out=DESTROY_PLAN_FILE, destroy=True, variables=variables),
        apply_args(DESTROY_PLAN_FILE),
    ]


def state_rm_args(addresses: list[str]) -> list[str]:
    """``terraform state rm``: forget resources without destroying them (a built image
    outlives the machine it was made from).

    Example:
        >>> state_rm_args(['aws_ami_from_instance.slipstream-web-ab12'])
        ['state', 'rm', '-no-color', 'aws_ami_from_instance.slipstream-web-ab12']
    """
    return ["state", "rm", "-no-color", *addresses]


def output_args() -> list[str]:
    """``terraform output`` as one JSON document.

    Example:
        >>> output_args()
        ['output', '-no-color', '-json']
    """
    return ["output", "-no-color", "-json"]


def validate_args() -> list[str]:
    """``terraform validate`` as one JSON document.

    Example:
        >>> validate_args()
        ['validate', '-no-color', '-json']
    """
    return ["validate", "-no-color", "-json"]
