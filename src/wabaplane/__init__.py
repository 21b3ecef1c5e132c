"""wabaplane: the WhatsApp Business Platform for many client businesses, from Kubernetes."""
