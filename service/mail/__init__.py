"""Mail: letters written when they are sent, a durable outbox in MongoDB, and SMTP delivery."""
