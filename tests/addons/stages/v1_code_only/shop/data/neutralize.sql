-- take payments in test mode: a copy must not charge real customers
UPDATE ir_config_parameter
   SET value = 'test'
 WHERE key = 'shop.payment_mode';
