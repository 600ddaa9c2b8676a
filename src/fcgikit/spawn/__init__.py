"""fcgikit.spawn: a resident spawn-fcgi. Binds once, pre-forks children that
share the listening socket, and supervises them as gunicorn's arbiter and
php-fpm do. See docs/spawn.md.

    from fcgikit.spawn import add_pool_arguments, run_manager, ChildContext
"""

from .child import FCGI_LISTENSOCK_FILENO, ChildContext
from .options import OptionsError, PoolConfig, add_pool_arguments, validate_pool_options
from .policy import EXIT_APP_LOAD_ERROR, EXIT_BOOT_ERROR
from .runner import run_manager
from .scoreboard import NullSlot, Slot

__all__ = [
    "add_pool_arguments",
    "run_manager",
    "ChildContext",
    "Slot",
    "NullSlot",
    "OptionsError",
    "PoolConfig",
    "validate_pool_options",
    "EXIT_APP_LOAD_ERROR",
    "EXIT_BOOT_ERROR",
    "FCGI_LISTENSOCK_FILENO",
]
