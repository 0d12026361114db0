from uer.registry import Registry

PROCESSORS = Registry("data processor", base="uer.data.processors.base:Processor")  # config: ProcessorConfig
