"""Payments: orders priced from the catalog and charged through Braintree in the background.

`catalog` (server-side prices), `orders` (placing, reading, webhook updates), `gateway` (the only
module that imports the Braintree SDK), `worker` (claims pending orders with a lease and charges
each exactly once).

May import: `service`'s infrastructure (config, database, errors, metrics, pages), `accounts` for
the caller, and `models`. Only the life cycle (`service.lifecycle`, `service.context`) and the
payments handlers import it; it never imports `realtime` (order status reaches clients through
the change stream like every other write).
"""
