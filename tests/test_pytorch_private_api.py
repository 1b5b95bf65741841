"""The few private PyTorch names deconvlab relies on still exist and behave as assumed.

Each one is used only where PyTorch has no public equivalent (see the comments at the
call sites in deconvlab/context.py). If PyTorch renames or changes one, this file fails
first, naming it, instead of the context manager breaking in a user's notebook.
"""

import torch
import torch.nn.functional as F

import deconvlab as dl


def test_the_function_mode_stack_can_be_read():
    mode = torch.overrides.TorchFunctionMode()
    before = torch.overrides._get_current_function_mode_stack()
    with mode:
        assert torch.overrides._get_current_function_mode_stack() == [*before, mode]
    assert torch.overrides._get_current_function_mode_stack() == before


def test_a_mode_can_be_popped_and_pushed_back():
    mode = torch.overrides.TorchFunctionMode()
    depth = torch._C._len_torch_function_stack()
    with mode:
        assert torch._C._len_torch_function_stack() == depth + 1
        assert torch._C._pop_torch_function_stack() is mode
        assert torch._C._len_torch_function_stack() == depth
        torch._C._push_on_torch_function_stack(mode)
    assert torch._C._len_torch_function_stack() == depth


def test_a_mode_runs_inside_the_generator_deconvlab_marks_critical():
    # deconvlab.context marks torch.overrides._pop_mode_temporarily's generator critical: PyTorch must
    # still call a mode's __torch_function__ (for a Python-level function such as F.relu) inside it.
    import inspect

    generator = torch.overrides._pop_mode_temporarily.__wrapped__
    assert inspect.isgeneratorfunction(generator)
    codes = []

    class Spy(torch.overrides.TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            frame = inspect.currentframe()
            while frame is not None:
                codes.append(frame.f_code)
                frame = frame.f_back
            return func(*args, **(kwargs or {}))

    with Spy():
        F.relu(torch.ones(2))
    assert generator.__code__ not in codes  # its frame is suspended at its yield, not on the stack ...
    assert torch.overrides.handle_torch_function.__code__ in codes  # ... of the function that entered it
    assert "_pop_mode_temporarily" in inspect.getsource(torch.overrides.handle_torch_function)


def test_functional_activations_live_in_torch_c_nn():
    assert F.gelu is torch._C._nn.gelu
    for name in ("gelu", "silu", "hardswish", "leaky_relu", "elu", "hardtanh", "softplus"):
        assert callable(getattr(torch._C._nn, name)), name


def test_our_mode_leaves_from_below_a_users_mode_and_the_users_mode_stays():
    class Users(torch.overrides.TorchFunctionMode):
        pass

    users = Users()
    rule = dl.backward_rule("deconvnet")
    rule.__enter__()
    users.__enter__()
    rule.__exit__(None, None, None)
    assert torch.overrides._get_current_function_mode_stack() == [users]
    users.__exit__(None, None, None)
    assert torch.overrides._get_current_function_mode_stack() == []


def test_compile_keeps_the_module_it_wraps_as_orig_mod():
    # deconvlab.escapes.eager_module: attribute() runs the uncompiled module
    module = torch.nn.Linear(2, 2)
    assert torch.compile(module)._orig_mod is module


def test_compilers_trace_with_fake_or_functional_tensors():
    # deconvlab.escapes.refuse_traced recognises a ReLU being traced by these classes
    from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode
    from torch._subclasses.functional_tensor import FunctionalTensor

    with FakeTensorMode():
        assert isinstance(torch.empty(2), FakeTensor)
    assert issubclass(FunctionalTensor, torch.Tensor)


def test_functorch_transforms_can_be_detected():
    # deconvlab.relu.relu_with_rule picks FuncRuleReLU inside torch.func transforms
    assert not torch._C._are_functorch_transforms_active()
    seen = []
    torch.func.vmap(lambda v: seen.append(torch._C._are_functorch_transforms_active()) or v)(torch.ones(2))
    assert seen == [True]


def test_torch_2_2_folds_its_private_is_compiling_while_tracing():
    # deconvlab.escapes.compiling on PyTorch 2.2, which has no torch.compiler.is_compiling
    if hasattr(torch.compiler, "is_compiling"):
        return
    seen = []

    @torch.compile(backend="eager")
    def traced(v):
        seen.append(torch._utils.is_compiling())
        return v + 1

    traced(torch.ones(2))
    assert seen == [True]
