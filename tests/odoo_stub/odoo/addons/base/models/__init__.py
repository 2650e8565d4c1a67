from . import ir_module
from . import ir_model
from . import res_users
from . import ir_config_parameter
from . import ir_cron
from . import ir_mail_server
from . import ir_attachment
from . import ir_ui_view
