<?php
$db_host = 'db.internal';
$db_password = "oWAQomYyCcXoB4V8";
define('MAILER_PASSWORD', 'igR4SXnI4oSwudoLgd');
$stripe = new \Stripe\StripeClient('sk_live_P81gFyryY3tQdxZMMox50H1dFKvTr8Sb9p');
