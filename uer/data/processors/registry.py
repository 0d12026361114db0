from uer.registry import Registry

PROCESSORS = Registry("data processor")  # name -> Processor subclass; config ProcessorConfig
