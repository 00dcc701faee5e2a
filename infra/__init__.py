"""CDK infrastructure of whatsapp-relay. Importing this package does not import aws_cdk."""
